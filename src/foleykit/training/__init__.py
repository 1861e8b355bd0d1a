"""foleykit.training"""
