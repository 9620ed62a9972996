"""service/registry"""
