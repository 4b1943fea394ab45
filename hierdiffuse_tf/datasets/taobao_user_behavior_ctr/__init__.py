"""taobao_user_behavior_ctr dataset."""
