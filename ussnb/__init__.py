"""ussnb: universal sound source separation trained on weakly labelled data, as a notebook kit."""

__version__ = "0.1.0"
