// What every benchmark file is given by bench/run.ts.

export type BenchOptions = {
  /** Fewer runs and smaller sizes: a check that the bench works, not figures to record. */
  quick: boolean;
  /** Progress lines go here (stderr), so the table on stdout stays clean. */
  say: (line: string) => void;
};
