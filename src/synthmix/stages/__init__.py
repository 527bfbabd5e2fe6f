"""The pipeline's stages: one module per dvc.yaml stage, each with `HELP`, `add_arguments(parser)` and a
keyword-only `main(...)` (see synthmix.cli). A stage module never imports another stage module or this
package: shared services live in library modules (synthmix.generation, synthmix.judge, synthmix.runner,
synthmix.stage_args, ...)."""
