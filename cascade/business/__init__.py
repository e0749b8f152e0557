"""cascade.business"""
