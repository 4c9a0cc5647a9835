"""Product backend sink: ``app.create_app`` serves it; ``signing`` documents the signature."""
