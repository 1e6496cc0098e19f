"""The WeChat Official Account channel (issue 7): signed XML pushes, passive replies, safe mode."""
