"""Pure tensor functions: rotations, CTF, Fourier conventions, FSC, Gaussian projection and voxelisation.

Every function takes device and dtype from its inputs; nothing here allocates on a fixed device.
"""
