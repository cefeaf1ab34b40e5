// Active health verdicts: a backend goes down after `fall` failed checks in a row and comes back
// after `rise` passed checks in a row, as HAProxy counts them.

export class RiseFall {
  private streak = 0;

  constructor(
    private readonly rise: number,
    private readonly fall: number,
    public healthy = true,
  ) {}

  /** Folds one check result in; returns true when the verdict changed. */
  record(passed: boolean): boolean {
    if (passed === this.healthy) {
      this.streak = 0;
      return false;
    }
    this.streak++;
    if (this.streak < (passed ? this.rise : this.fall)) return false;
    this.healthy = passed;
    this.streak = 0;
    return true;
  }
}
