"""uwm-ros training side: model, data, training loop and export."""
