"""foleykit.modules"""
