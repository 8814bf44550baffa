from emblab.bench.throughput import Args, main
from emblab.core import cli

cli.main(Args, main)
