"""foleykit.generator"""
