/**
 * A number field takes a whole number in range, or is put back and says why: the field never shows a
 * value that is not used, and a rejected entry is never silent.
 */
export function takeWholeNumber(input: HTMLInputElement, range: { min: number; max: number; what: string; kept: number }, apply: (value: number) => void): string | null {
  const value = input.valueAsNumber;
  if (Number.isInteger(value) && value >= range.min && value <= range.max) {
    apply(value);
    return null;
  }
  const typed = input.value;
  input.value = String(range.kept);
  return `${range.what} must be a whole number from ${range.min.toLocaleString('en-US')} to ${range.max.toLocaleString('en-US')}, not “${typed}”; kept ${range.kept}.`;
}
