"""cascade.models"""
