/**
 * Module roots: the directories whose files may run as node modules. The one check both
 * the embedded executor (`moduleRoots`, in `check.ts`) and a worker process of the
 * BullMQ backend (`--module-root`, in `remote/worker.ts`) apply to a node's module,
 * before anything is loaded.
 *
 * A module is allowed only when it is named by an absolute path (or a `file:` URL) whose
 * real path (`..` and symbolic links resolved, `fs.realpathSync`) is a file inside the
 * real path of one of the roots. A bare name (`child_process`), a `node:` built-in and a
 * relative path are refused: they do not name a file of the roots.
 *
 * The roots bound what a node names, not what its module then imports: a module inside
 * the roots may `require()` anything, as any code may. What the roots hold is trusted.
 */
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { show } from '../shared/show';

export class ModuleRoots {
  /** Identifies the set of roots: a module allowed under one set is not under another. */
  readonly key: string;

  private constructor(
    /** Real paths of the roots, sorted. */
    readonly dirs: readonly string[],
  ) {
    this.key = dirs.join('\0');
  }

  /**
   * The roots from directories given as option `name`.
   * @throws {TypeError} naming the option and the directory that is not an existing one.
   */
  static of(dirs: unknown, name: string): ModuleRoots {
    if (!Array.isArray(dirs) || dirs.length === 0) {
      throw new TypeError(`Expected \`${name}\` to be a non-empty array of absolute directory paths, got ${show(dirs)}`);
    }
    const real = dirs.map((dir: unknown) => {
      if (typeof dir !== 'string' || !isAbsolute(dir)) {
        throw new TypeError(`Expected each of \`${name}\` to be an absolute directory path, got ${show(dir)}`);
      }
      let path: string;
      try {
        path = realpathSync(dir);
      } catch (cause) {
        throw new TypeError(`Module root ${JSON.stringify(dir)} of \`${name}\` does not exist`, { cause });
      }
      if (!statSync(path).isDirectory()) throw new TypeError(`Module root ${JSON.stringify(dir)} of \`${name}\` is not a directory`);
      return path;
    });
    return new ModuleRoots([...new Set(real)].sort());
  }

  /** Why `module` may not run under these roots, or undefined when it may. Touches no module. */
  refusal(module: string): string | undefined {
    if (module.startsWith('node:')) return `"${module}" is a Node.js built-in module: only files inside the module roots may run`;
    let path: string;
    if (module.startsWith('file:')) {
      try {
        path = fileURLToPath(module);
      } catch {
        return `"${module}" is not a valid file: URL`;
      }
    } else if (isAbsolute(module)) {
      path = module;
    } else {
      return `"${module}" is a package name, a built-in module or a relative path: only absolute paths inside the module roots may run`;
    }
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      return `${path} does not exist`;
    }
    if (!this.dirs.some((root) => inside(root, real))) {
      const resolved = real === path ? '' : ` (${real} once resolved)`;
      return `${path}${resolved} is outside the module roots: ${this.dirs.join(', ')}`;
    }
    try {
      if (!statSync(real).isFile()) return `${path} is not a file`;
    } catch {
      return `${path} does not exist`;
    }
    return undefined;
  }
}

/** Whether real path `path` lies strictly inside real directory `root`. */
function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

