"""movielens_100k_ctr dataset."""
