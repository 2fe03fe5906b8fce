"""gomail plugin dane (being written)."""
