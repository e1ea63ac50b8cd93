"""The few, small adaptations of nnU-Net 2.8 internals this package cannot avoid; each module says why."""
