import { DomainError } from '../http/domain-error.js';

export type ProjectsErrorCode = 'PROJECT_NOT_FOUND' | 'TASK_NOT_FOUND';

export class ProjectsError extends DomainError<ProjectsErrorCode> {}
