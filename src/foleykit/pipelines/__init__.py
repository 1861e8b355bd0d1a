"""foleykit.pipelines"""
