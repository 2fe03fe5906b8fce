"""gomail plugin mta-sts (being written)."""
