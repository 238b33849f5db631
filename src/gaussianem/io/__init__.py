"""File formats: MRC, RELION star, cryoSPARC cs, cryoDRGN pkl, PLY, PDB/mmCIF, dataset manifests."""
