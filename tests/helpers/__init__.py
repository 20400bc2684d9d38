"""What tests share that is not a fixture: runners, stores, short runs, the metric contract, network."""
