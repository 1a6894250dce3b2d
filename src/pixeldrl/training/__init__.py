"""Training: the PA3C loop, the supervised loop for the U-Nets, parallel forms, run folders and
checkpoints.
"""
