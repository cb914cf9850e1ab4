"""targets/kserve"""
