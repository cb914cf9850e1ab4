"""The regression gate behind `bench compare`: comparable sides, the block bootstrap, verdicts, output."""
