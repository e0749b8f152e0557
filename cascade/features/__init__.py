"""cascade.features"""
