"""service/check"""
