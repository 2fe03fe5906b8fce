"""gomail admin, portal and webmail pages: filled in by the web UI issue."""
