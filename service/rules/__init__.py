"""service/rules"""
