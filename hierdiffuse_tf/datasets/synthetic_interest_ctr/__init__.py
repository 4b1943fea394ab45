"""synthetic_interest_ctr dataset."""
