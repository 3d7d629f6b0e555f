"""Training: ``SERModule`` (loss, metrics, logging), optimizer groups, callbacks, transfer."""
