"""The host project's users, and what it does when Iron decides about them."""
