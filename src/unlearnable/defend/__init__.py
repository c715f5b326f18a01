"""What a scraper can do to a published folder before training on it."""
