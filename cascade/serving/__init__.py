"""cascade.serving"""
