"""comp: a Kaggle-style image-classification competition toolkit.

Flow: config -> data -> model -> engine -> predict -> submit. Every CLI command is a thin wrapper
around one plain function of these modules.
"""

__version__ = "0.1.0"
