"""(layout in progress)"""
