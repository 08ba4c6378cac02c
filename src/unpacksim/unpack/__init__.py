"""The reference unpacker and pull pipeline (a port of the seed), era flags, the plug-in interface."""
