"""(being written this session)"""
urlpatterns: list = []
