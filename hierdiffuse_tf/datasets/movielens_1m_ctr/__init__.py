"""movielens_1m_ctr dataset."""
