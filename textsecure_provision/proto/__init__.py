"""Generated protobuf code (tools/gen_protos.py). Only protocol/ imports it."""
