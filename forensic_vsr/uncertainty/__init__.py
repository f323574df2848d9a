"""What the output holds that the input does not support: the exact layer (`exact`: S, the
synthesized content, and R, the contradiction, of every output frame), the learned scale head
(`head`) and the calibrated interval layer (`calibration`). Pure computations on planes; the
maps are written into a bundle by forensic_vsr.bundle.maps."""
