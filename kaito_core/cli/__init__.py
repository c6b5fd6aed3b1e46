"""The `kaito` command. Each module here adds one group of subcommands and keeps heavy imports lazy."""
