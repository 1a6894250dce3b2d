"""The networks: PixelDRL-MG's (half-width dilated VGG16, self-attention, policy and value heads), the
CPU kernel workarounds it runs on, and PixelRL's and MONAI's networks for the baselines.
"""
