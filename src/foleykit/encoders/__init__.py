"""foleykit.encoders"""
