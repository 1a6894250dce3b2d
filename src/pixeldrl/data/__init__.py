"""Files to network-size slices: 2-D images, NIfTI volumes, dataset layouts, transforms, the folder
format, the splitting protocol, prepared stores and the embedded demo data.
"""
