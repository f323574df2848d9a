"""Writing a bundle: the hidden build directory and its commit (writer), the ingest pass, the
enhancement pass with its encoders (frames, master, maps), the step statement and the report
step. File names come from forensic_vsr.layout, shared with the verifier."""
