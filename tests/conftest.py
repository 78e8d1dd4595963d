import os
import sys

# tests/reference.py is imported as a plain module (`import reference`) whatever the import mode
sys.path.insert(0, os.path.dirname(__file__))
