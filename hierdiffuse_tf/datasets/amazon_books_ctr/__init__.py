"""amazon_books_ctr dataset."""
