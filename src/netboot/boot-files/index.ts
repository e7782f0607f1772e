/** The TFTP root's boot files for Raspberry Pi 4 / CM4 netboot: what the CLI uses. */
export { checkTftpRoot, type CheckReport, type FolderReport } from './check.js';
export { DEFAULT_CONSOLE, serialProblem, serverUrlProblem } from './config-files.js';
export { BootFilesError, buildDebianBootFiles, populateTftpRoot, type PopulateOptions, type PopulateResult, type WrittenFile } from './populate.js';
