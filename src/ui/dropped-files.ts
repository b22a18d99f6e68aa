/** Files from a drop: plain files as they are, folders walked recursively (HF layout is flat, shards included). */

function readEntries(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

function entryFile(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

async function collect(entry: FileSystemEntry, out: File[]): Promise<void> {
  if (entry.isFile) out.push(await entryFile(entry as FileSystemFileEntry));
  else if (entry.isDirectory) {
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    // readEntries returns at most ~100 entries per call; call until it returns none.
    for (;;) {
      const batch = await readEntries(reader);
      if (batch.length === 0) break;
      for (const child of batch) await collect(child, out);
    }
  }
}

/** The dropped files and, when one folder was dropped, its name. */
export async function droppedFiles(transfer: DataTransfer): Promise<{ files: File[]; folder: string | null }> {
  const entries = Array.from(transfer.items)
    .map((item) => item.webkitGetAsEntry?.() ?? null)
    .filter((e): e is FileSystemEntry => e !== null);
  if (entries.length === 0) return { files: Array.from(transfer.files), folder: null };
  const files: File[] = [];
  for (const entry of entries) await collect(entry, files);
  const folder = entries.length === 1 && entries[0].isDirectory ? entries[0].name : null;
  return { files, folder };
}
