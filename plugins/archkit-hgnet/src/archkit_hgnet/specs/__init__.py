"""PP-HGNet and PP-HGNetV2 specs, found by name through the ``archkit.specs`` entry point."""
