"""Numbers from stored runs: metrics per problem, the statistics behind them, comparisons
between two results and the train report."""
