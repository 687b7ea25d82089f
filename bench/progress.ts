/** A progress line on a terminal, rewritten in place; silent when stdout is not a TTY. */
export class Progress {
  private readonly tty = process.stdout.isTTY === true;
  private shown = false;

  update(text: string): void {
    if (!this.tty) return;
    // `columns` is 0 or undefined when the terminal does not say.
    const width = Math.max(20, (process.stdout.columns || 100) - 1);
    process.stdout.write(`\r\x1b[2K${text.length > width ? text.slice(0, width) : text}`);
    this.shown = true;
  }

  /** Erases the line, before printing something that stays. */
  clear(): void {
    if (!this.shown) return;
    process.stdout.write('\r\x1b[2K');
    this.shown = false;
  }
}
