"""foleykit.evaluation"""
